"""Worked examples of the deployml.mlops pipeline (run them from the repository root, see README.md)."""
