"""The controller <-> agent wire: generated-code maintenance and the codec."""
