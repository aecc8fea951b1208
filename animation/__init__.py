"""Offline animation: media files in and out, and the animate / part-swap loops over frames."""
