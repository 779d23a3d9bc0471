"""Root conftest: registers nothing heavy. The polyaudit plugin comes from its pytest11 entry point;
this file only makes the repository root importable (for `fixtures/`)."""
