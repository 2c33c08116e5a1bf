"""Deployment: export networks, the .bin inference file layout, the Keras weight importer."""
