"""Data: locating, downloading and verifying data sets; vocabularies."""
