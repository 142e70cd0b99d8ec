"""The demo app `maitred` serves when no APP is given."""
