"""Tests of the pure topology layer."""
