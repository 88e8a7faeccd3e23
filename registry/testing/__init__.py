"""Test helpers the registry exports: the storage driver conformance suite and its pytest plugin."""
