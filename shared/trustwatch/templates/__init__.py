"""The report's templates (trustwatch.report).

A package of its own so that function bundles, which take the data files of the packages
they import (trustwatch.package), leave the report out.
"""
