"""maitred's side-by-side benchmark suite: ``python -m bench`` (see bench/README.md)."""
