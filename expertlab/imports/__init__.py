"""Importers of externally produced artifacts, one module per source: the study's masks and verdicts, human annotations."""

IMPORTED = "imported"  # variants.origin of every imported variant (its masks, its verdicts)
