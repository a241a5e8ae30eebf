"""Decode videos (mp4, webm, avi, mov, mkv, gif, ...) into lists of RGB PIL frames with PyAV.

PyAV's wheels bundle FFmpeg, so no system ffmpeg is needed. Only the frames that are kept are
decoded: a 10-minute clip costs what its first `num_frames` frames cost.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from diffsynth.data.media import load_image
from diffsynth.errors import UserError

VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".avi", ".mov", ".mkv", ".gif", ".flv", ".wmv", ".m4v", ".mpeg", ".mpg"})
#: Causal video VAEs compress time by 4 after the first frame, so clips have 1 + 4k frames.
TEMPORAL_FACTOR, TEMPORAL_REMAINDER = 4, 1


def is_video_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_video_column(key: str) -> bool:
    """Columns named `video` or `*_video` hold clips; a still image there becomes a 1-frame clip."""
    return key == "video" or key.endswith("_video")


def frame_count(total: int, requested: int) -> int:
    """Frames to keep from a clip of `total`: `requested` when it has them, else the largest
    n <= total with n % 4 == 1 (at least 1)."""
    if requested < 1:
        raise UserError(f"--num_frames {requested}: expected a positive integer")
    if total >= requested:
        return requested
    n = total
    while n > 1 and n % TEMPORAL_FACTOR != TEMPORAL_REMAINDER:
        n -= 1
    return max(n, 1)


def load_video(path: str | Path, num_frames: int) -> list[Image.Image]:
    """The first frames of `path` as RGB PIL images, counted by `frame_count`.

    Raises UserError naming the file when it is missing, empty or not a decodable video.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: video file not found")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: video file is empty (0 bytes)")
    frames: list[Image.Image] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UserError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                frames.append(frame.to_image().convert("RGB"))
                if len(frames) >= num_frames:
                    break
    except UserError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a video FFmpeg can decode ({e})") from None
    if not frames:
        raise UserError(f"{path}: video has no frames")
    return frames[: frame_count(len(frames), num_frames)]


def load_frames(path: str | Path, num_frames: int) -> list[Image.Image]:
    """A video's first frames, or a still image as a 1-frame clip."""
    if is_video_file(path):
        return load_video(path, num_frames)
    return [load_image(path)]


def video_frame_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of a clip's frames, from its stream header (nothing decoded)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height
