"""Spreading a study's stage instances over machines (submitit: SLURM job arrays, or local processes) around one
shared DVC cache; README, "Running on a cluster"."""
