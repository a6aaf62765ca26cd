"""Importers of externally produced artifacts, one module per source: the study's masks and verdicts, human annotations."""
