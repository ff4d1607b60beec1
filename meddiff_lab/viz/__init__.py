"""Figures and widgets. Every notebook's figures come from these few helpers so they look alike."""
