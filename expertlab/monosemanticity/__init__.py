"""The second study (paper 001): activation records, sampling, explanations and monosemanticity scores of experts."""
