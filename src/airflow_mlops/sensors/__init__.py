"""Sensors: waiting for a day's data to land or to be published."""
