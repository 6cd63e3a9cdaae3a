"""Face and lip crops: dlib landmarks tracked through a clip, aligned crops, previews."""
from avprep.faces.draw import draw_landmarks
from avprep.faces.stage import CropOutput, FaceOptions, crop_clip, crop_frames
from avprep.faces.track import TrackOptions, track_landmarks

__all__ = ["CropOutput", "FaceOptions", "TrackOptions", "crop_clip", "crop_frames",
           "draw_landmarks", "track_landmarks"]
