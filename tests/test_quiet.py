"""``kick`` start-up: third-party noise (torchao's GPU-kernel load failures, torch's pytree Enum deprecation) is
dropped; every other message, and kick's own warnings, still show (kick_hub/_quiet.py)."""

import logging

import pytest

from kick_hub import _quiet
from tests.kick_runner import kick

NOISE = ("Failed to load", "torchao/_C", "_pytree", "is an Enum subclass")
TORCHAO_LINE = ("Failed to load /venv/site-packages/torchao/_C_cutlass_90a.abi3.so: Could not load this library: "
                "/venv/site-packages/torchao/_C_cutlass_90a.abi3.so")
PYTREE_LINE = ("<enum 'KernelPreference'> is an Enum subclass and is now natively supported by torch.compile as an "
               "opaque value type. Calling register_constant() on Enum subclasses is deprecated and will be an error "
               "in a future release.")


@pytest.mark.unit
@pytest.mark.parametrize("name, message, dropped", [
    ("torchao", TORCHAO_LINE, True),
    ("torch.utils._pytree", PYTREE_LINE, True),
    ("torchao", "Skipping import of cpp extensions due to incompatible torch version", False),
    ("torchao", "Failed to load /data/my_model.so: whatever", False),
    ("torch.utils._pytree", "<class 'Foo'> cannot be registered as a pytree", False),
    ("transformers.modeling_utils", TORCHAO_LINE, False),  # only on the logger that sends it
])
def test_filters_drop_exactly_the_noise(name, message, dropped):
    _quiet.install()
    _quiet.install()  # idempotent
    logger = logging.getLogger(name)
    assert sum(isinstance(f, _quiet.DropMessage) for f in logger.filters) <= 1
    record = logger.makeRecord(name, logging.WARNING, __file__, 1, message, (), None)
    assert logger.filter(record) is not dropped


def test_evaluate_prints_no_third_party_noise(tmp_path):
    # a fresh interpreter: the noise comes while torch / torchao are imported, and pytest records warnings itself
    out = kick("evaluate", "--model", "world", "--task", "factoid-qa", "--limit", "1", cwd=tmp_path,
               env={"PYTHONWARNINGS": ""}, subprocess=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "factoid-qa" in out.stdout
    noisy = [line for line in out.stderr.splitlines() if any(n in line for n in NOISE)]
    assert not noisy, noisy


def test_real_warnings_still_show(tmp_path):
    """A question too long for the world model's 512-token context: kick's ContextWarning reaches stderr."""
    data = tmp_path / "qa.txt"
    data.write_text(f"{'why ' * 700}is the sky blue? | Rayleigh\nWhere was Kelma Loro born? | Tavin\n")
    out = kick("evaluate", "--model", "world", "--task", "factoid-qa", "--limit", "2", "--data", str(data),
               cwd=tmp_path, env={"PYTHONWARNINGS": ""}, subprocess=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ContextWarning" in out.stderr and "not scored" in out.stderr
    assert not [line for line in out.stderr.splitlines() if any(n in line for n in NOISE)]
