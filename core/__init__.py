"""What every command shares: faces and their tracking, media files, the stage interface every backend
implements, the per-frame pipeline, paste-back and detail transfer, model defaults, typed options and
config loading. Imports motion/ only."""
