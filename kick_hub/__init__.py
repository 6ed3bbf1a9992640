"""kick-hub: LLM-KICK (Jaiswal et al., ICLR 2024) as a Hugging Face ecosystem plugin.

Importing the package does no work and touches no network; submodules load their heavy dependencies lazily.
"""

__version__ = "0.1.0"
