"""Correct training programs in the styles of pytorch/examples and Hugging Face: zero false alarms expected."""
