"""kick-hub: LLM-KICK (Jaiswal et al., ICLR 2024) as a Hugging Face ecosystem plugin.

Importing the package does no work and touches no network; submodules load their heavy dependencies lazily.
"""

__version__ = "0.1.0"

# The libraries whose versions decide a result's numbers or a variant's bytes (recorded when installed).
VERSIONED = ("torch", "transformers", "safetensors", "optimum", "gptqmodel")


def versions() -> dict[str, str]:
    """Versions of Python, kick-hub and the installed ``VERSIONED`` libraries, recorded beside every result and in
    every variant's manifest (read from package metadata: nothing is imported)."""
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version(), "kick-hub": __version__}
    for pkg in VERSIONED:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
