"""Fuzzing helpers shared by tests/test_adversarial*.py, and the atheris target."""
