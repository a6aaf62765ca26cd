"""Importers of externally produced artifacts, one module per source: the study's masks and verdicts, human annotations."""

from expertlab.records import ORIGINS

IMPORTED = ORIGINS[1]  # variants.origin of every imported variant (its masks, its verdicts)
