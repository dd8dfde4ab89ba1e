"""The saved-model directory: its layout, atomic writes, complete validation and the safe archive reader."""
