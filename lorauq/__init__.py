"""lorauq: uncertainty quantification in fine-tuned LLMs with LoRA ensembles.

The package holds all logic; the numbered notebooks only set parameters, call it and show
figures. See DESIGN in the README for the data contracts between the parts.
"""

__version__ = "0.1.0"
