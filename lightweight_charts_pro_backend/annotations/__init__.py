"""Annotations: drawings, markers and price lines anchored in time and price, per chart."""
