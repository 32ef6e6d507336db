"""Media: probing, decoding and frame sampling of video files (ffmpeg)."""
