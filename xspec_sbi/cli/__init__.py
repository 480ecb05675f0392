"""The ``xspec-sbi`` command."""
