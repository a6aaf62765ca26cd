"""expertlab: declarative experiment database for Mixture-of-Experts expert studies."""

__version__ = "0.1.0"
