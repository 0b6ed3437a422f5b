from typing import Any

Buffer = Any

def evaluate(
    g_img: Buffer,
    g_cat: Buffer,
    g_box: Buffer,
    g_area: Buffer,
    g_crowd: Buffer,
    g_real: Buffer,
    d_img: Buffer,
    d_cat: Buffer,
    d_box: Buffer,
    d_score: Buffer,
    num_images: int,
    num_categories: int,
    iou_thrs: Buffer,
    rec_thrs: Buffer,
    area_rng: Buffer,
    max_dets: Buffer,
    use_cats: bool,
    threads: int,
    want_slots: bool = False,
    /,
) -> tuple[bytes, ...]: ...
def count_duplicates(img: Buffer, cat: Buffer, box: Buffer, score: Buffer, /) -> int: ...
