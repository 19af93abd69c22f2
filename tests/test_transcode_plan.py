"""Planning: copy what browsers play, encode the rest, keep every angle and track; profiles."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from avidence.transcode import profiles
from avidence.transcode.plan import plan
from avidence.transcode.probe import MediaInfo, StreamInfo

MP4 = profiles.BUILT_IN["mp4-h264"]


def video(index: int = 0, **fields: object) -> StreamInfo:
    base = StreamInfo(
        index=index,
        kind="video",
        codec="h264",
        pix_fmt="yuv420p",
        width=1920,
        height=1080,
        frame_rate="30/1",
        duration=60.0,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def audio(index: int, codec: str = "aac") -> StreamInfo:
    return StreamInfo(index=index, kind="audio", codec=codec, sample_rate=48000, channels=2)


def media(*streams: StreamInfo, container: str = "mov,mp4,m4a,3gp,3g2,mj2") -> MediaInfo:
    return MediaInfo(container, "", 60.0, 0.0, None, None, tuple(streams))


def after(argv: tuple[str, ...], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_browser_playable_h264_aac_is_only_remuxed() -> None:
    [command] = plan(media(video(), audio(1)), MP4)
    assert after(command.argv, "-c:v") == ["copy"] and after(command.argv, "-c:a:0") == ["copy"]
    assert "libx264" not in command.argv and command.copies_video
    assert after(command.argv, "-movflags") == ["+faststart"]
    assert command.argv[-1] == "mp4-h264.mp4" and command.outputs[0].content_type == "video/mp4"


@pytest.mark.parametrize(
    "stream",
    [
        video(codec="mpeg2video"),
        video(codec="hevc"),
        video(pix_fmt="yuv420p10le"),  # 10-bit H.264 plays almost nowhere
        video(height=2160, width=3840),  # above the 1080p cap
    ],
    ids=["mpeg2", "hevc", "10bit", "4k"],
)
def test_other_video_is_encoded_with_the_height_cap(stream: StreamInfo) -> None:
    [command] = plan(media(stream, audio(1, "mp2")), MP4)
    assert after(command.argv, "-c:v") == ["libx264"]
    [chain] = after(command.argv, "-vf")
    assert "scale=-2:'min(1080,trunc(ih/2)*2)'" in chain and chain.endswith("format=yuv420p")
    assert after(command.argv, "-fps_mode") == ["vfr"], "never invent frames in a gap"
    assert after(command.argv, "-c:a:0") == ["aac"] and not command.copies_video


def test_every_audio_track_is_kept_each_decided_alone() -> None:
    [command] = plan(media(video(), audio(1), audio(2, "pcm_s16le"), audio(3, "mp3")), MP4)
    assert after(command.argv, "-map") == ["0:0", "0:1", "0:2", "0:3"]
    assert after(command.argv, "-c:a:0") == ["copy"]
    assert after(command.argv, "-c:a:1") == ["aac"]
    assert after(command.argv, "-c:a:2") == ["copy"]


def test_each_angle_gets_its_own_file_with_all_audio() -> None:
    commands = plan(media(video(0), video(1, codec="mpeg2video"), audio(2)), MP4)
    assert [c.outputs[0].name for c in commands] == ["mp4-h264.mp4", "mp4-h264-1.mp4"]
    assert [after(c.argv, "-map") for c in commands] == [["0:0", "0:2"], ["0:1", "0:2"]]
    assert [c.outputs[0].angle for c in commands] == [0, 1]
    posters = plan(media(video(0), video(1), audio(2)), profiles.BUILT_IN["poster"])
    assert [c.outputs[0].name for c in posters] == ["poster.jpg", "poster-1.jpg"]


def test_audio_only_becomes_m4a_and_gets_no_poster() -> None:
    info = media(audio(0, "pcm_s16le"), container="wav")
    [command] = plan(info, MP4)
    assert command.outputs[0].name == "mp4-h264.m4a"
    assert command.outputs[0].content_type == "audio/mp4"
    assert plan(info, profiles.BUILT_IN["poster"]) == []


def test_cover_pictures_and_stills_are_not_angles() -> None:
    cover = video(1, codec="mjpeg", still=True)
    [command] = plan(media(audio(0, "mp3"), cover, container="mp3"), MP4)
    assert command.outputs[0].name == "mp4-h264.m4a"
    photo = MediaInfo("image2", "", None, None, None, None, (video(codec="mjpeg", still=True),))
    assert plan(photo, MP4) == [] and plan(photo, profiles.BUILT_IN["poster"]) == []


def test_hls_sprite_and_poster_outputs() -> None:
    info = media(video(), audio(1))
    [hls] = plan(info, profiles.BUILT_IN["hls"])
    assert [o.name for o in hls.outputs] == ["hls.m3u8", "hls.m4s"]
    assert after(hls.argv, "-hls_flags") == ["single_file"]
    [sprite] = plan(info, profiles.BUILT_IN["sprite"])
    assert sprite.outputs[0].details == {
        "interval": 1.0,
        "columns": 10,
        "rows": 10,
        "tile_width": 160,
    }
    [poster] = plan(info, profiles.BUILT_IN["poster"])
    assert after(poster.argv, "-ss") == ["6.000"] and poster.outputs[0].details == {"at": 6.0}


def test_hardware_encoder_arguments() -> None:
    vaapi = profiles.build({"mp4-h264": {"encoder": "h264_vaapi"}})["mp4-h264"]
    [command] = plan(media(video(codec="hevc")), vaapi)
    assert after(command.argv, "-vaapi_device") == ["/dev/dri/renderD128"]
    assert command.argv.index("-vaapi_device") < command.argv.index("-i")
    assert after(command.argv, "-vf")[0].endswith("format=nv12,hwupload")
    nvenc = profiles.build({"mp4-h264": {"encoder": "h264_nvenc", "crf": 28}})["mp4-h264"]
    [command] = plan(media(video(codec="hevc")), nvenc)
    assert after(command.argv, "-c:v") == ["h264_nvenc"] and after(command.argv, "-cq") == ["28"]


def test_profiles_from_config_sections() -> None:
    built = profiles.build({"mp4-720": {"kind": "mp4", "max_height": 720, "preset": "faster"}})
    assert built["mp4-720"].max_height == 720 and "mp4-h264" in built
    [command] = plan(media(video()), built["mp4-720"])  # 1080p is now above the cap
    assert after(command.argv, "-preset") == ["faster"]
    assert [p.name for p in profiles.select(built, ["poster", "mp4-720"])] == ["poster", "mp4-720"]


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"mp4-h264": {"colour": "red"}}, "profiles.mp4-h264: unknown setting 'colour'"),
        ({"new": {"crf": 20}}, "profiles.new.kind: required"),
        ({"new": {"kind": "avi"}}, "profiles.new.kind: 'avi' is not one of"),
        ({"mp4-h264": {"encoder": "x265"}}, "profiles.mp4-h264.encoder"),
        ({"mp4-h264": {"crf": "high"}}, "profiles.mp4-h264.crf: expected int"),
        ({"mp4-h264": {"max_height": 10}}, "profiles.mp4-h264.max_height"),
        ({"Bad Name": {"kind": "mp4"}}, "profiles.Bad Name: a profile name is lowercase"),
        ({"poster": "yes"}, "profiles.poster: expected a table"),
    ],
)
def test_bad_profile_settings_name_profile_and_key(
    sections: dict[str, object], message: str
) -> None:
    with pytest.raises(profiles.ProfileError, match="^" + re.escape(message)):
        profiles.build(sections)


def test_selecting_an_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(profiles.ProfileError, match="no profile 'webm'; known: hls, mp4-h264"):
        profiles.select(profiles.build(), ["webm"])
