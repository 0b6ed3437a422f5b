"""Wiring the stages: dataset -> runner -> decoder -> NMS -> detections -> protocols."""
