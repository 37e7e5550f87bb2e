"""The bases that methods build on, one module each: ``dev_trained`` (trained on the dev table)."""
