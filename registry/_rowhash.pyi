from collections.abc import Callable, Iterable

def take_fields(
    flat: list[bytes],
    endpoints: dict[str, list[bytes]],
    services: dict[str, bytes],
    releases: dict[str, bytes],
    other: Callable[[bytes, bytes], None],
    /,
) -> tuple[int, int]: ...
def take_rows(
    rows: Iterable[tuple[str, str, bytes]],
    endpoints: dict[str, list[bytes]],
    services: dict[str, bytes],
    releases: dict[str, bytes],
    other: Callable[[str, str, bytes], None],
    /,
) -> tuple[int, int]: ...
