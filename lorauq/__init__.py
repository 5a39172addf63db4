"""lorauq: uncertainty quantification in fine-tuned LLMs with LoRA ensembles.

The package holds all logic; the numbered notebooks only set parameters, call it and show
figures. docs/architecture.md describes the parts and the data contracts between them.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
