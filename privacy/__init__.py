"""Privacy: erasure, access (export) and retention of personal data."""
