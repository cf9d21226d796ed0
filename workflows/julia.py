"""A Julia-set image computed as tiles in parallel and stitched when the last tile arrives.

Start -> julia_start (one message per tile) -> julia_tile (escape counts of its pixels, numpy)
-> julia_stitch (@atomic: keeps each tile in Persist; the last one draws the PNG, completes).
The image is attached to the incident as the result "julia.png" (workflow.AttachResult): it
outlives the incident's cleanup and shows on the incident's page in the admin. The tiles
travel in the messages (a 64 x 64 tile is ~15 kB of JSON).
"""
import io

from incidents import workflow

KIND = "JULIA"
DEFAULTS = {"width": 256, "height": 256, "tiles": 4, "c": [-0.8, 0.156], "max_iter": 120}
IMAGE = "julia.png"  # the name of the incident's result


@workflow.handler
def julia_start_handler(message):
    """Split the image into tiles x tiles parts. Parameters (all optional): width, height,
    tiles (per side), c ([re, im]), max_iter."""
    p = {**DEFAULTS, **(message.get("parameters") or {})}
    width, height, tiles = int(p["width"]), int(p["height"]), int(p["tiles"])
    if not (1 <= tiles <= min(width, height) and width * height <= 4_000_000):
        raise ValueError(f"julia: {tiles} tiles per side of a {width} x {height} image does not "
                         "fit; use 1 <= tiles <= min(width, height) and at most 4 megapixels")
    for row in range(tiles):
        for col in range(tiles):
            workflow.send(message={
                "IncidentID": message["IncidentID"], "width": width, "height": height,
                "tiles": tiles, "row": row, "col": col, "c": p["c"], "max_iter": p["max_iter"],
                "x": [col * width // tiles, (col + 1) * width // tiles],
                "y": [row * height // tiles, (row + 1) * height // tiles],
            }, queue="julia_tile", src_tag="start", dest_tag=f"tile {row},{col}")


@workflow.handler
def julia_tile_handler(message):
    import numpy as np

    (x0, x1), (y0, y1) = message["x"], message["y"]
    width, height = message["width"], message["height"]
    xs = np.linspace(-1.6, 1.6, width)[x0:x1]
    ys = np.linspace(-1.0, 1.0, height)[y0:y1]
    z = xs[np.newaxis, :] + 1j * ys[:, np.newaxis]
    c = complex(*message["c"])
    counts = np.zeros(z.shape, dtype=np.int32)
    alive = np.ones(z.shape, dtype=bool)
    for _ in range(int(message["max_iter"])):
        z[alive] = z[alive] ** 2 + c
        alive &= np.abs(z) <= 2
        counts += alive
    workflow.send(message={**{k: message[k] for k in ("IncidentID", "row", "col", "x", "y",
                                                    "tiles", "width", "height", "max_iter")},
                           "counts": counts.tolist()},
                  queue="julia_stitch", src_tag=f"tile {message['row']},{message['col']}",
                  dest_tag="stitch")


@workflow.atomic
@workflow.handler
def julia_stitch_handler(message):
    incident_id = message["IncidentID"]
    tile = {k: message[k] for k in ("row", "col", "x", "y", "counts")}
    workflow.Persist.Put(incident_id, tile, key="tiles")
    tiles = workflow.Persist.Get(incident_id, key="tiles")
    if len({(t["row"], t["col"]) for t in tiles}) < message["tiles"] ** 2:
        return
    attach_png(incident_id, tiles, message["width"], message["height"], message["max_iter"])
    workflow.Complete(incident_id)


def attach_png(incident_id, tiles, width, height, max_iter):
    import numpy as np
    from PIL import Image

    pixels = np.zeros((height, width), dtype=np.uint8)
    for t in tiles:
        (x0, x1), (y0, y1) = t["x"], t["y"]
        pixels[y0:y1, x0:x1] = np.asarray(t["counts"]) * 255 // max(1, max_iter)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")  # 8-bit grey
    workflow.AttachResult(incident_id, IMAGE, png.getvalue(),
                          title=f"Julia set, {width} x {height}, {len(tiles)} tiles")


def start_demo(size=256, seed=None):
    """`make demo WORKFLOW=julia [SIZE=n]`: an n x n image in 4 x 4 tiles."""
    parameters = {**DEFAULTS, "width": size, "height": size}
    incident_id = workflow.CreateIncident(name=f"julia {size} x {size}", kind=KIND,
                                          parameters=parameters)
    workflow.send(message={"IncidentID": incident_id, "parameters": parameters},
                  queue="julia_start")
    workflow.FlushMessages()
    return incident_id, parameters


def check_demo(incident_id, parameters):
    """Say where the image is; raise ValueError if it is missing or the wrong size."""
    from PIL import Image

    try:
        with workflow.OpenResult(incident_id, IMAGE) as stored, Image.open(stored) as image:
            size = image.size
    except (LookupError, OSError) as exc:
        raise ValueError(f"julia: no image {IMAGE!r} for incident {incident_id}: {exc}") from exc
    if size != (parameters["width"], parameters["height"]):
        raise ValueError(f"julia: {IMAGE} is {size[0]} x {size[1]}, expected "
                         f"{parameters['width']} x {parameters['height']}")
    return (f"drew a {size[0]} x {size[1]} Julia-set image, the result {IMAGE!r} of incident "
            f"{incident_id}: see it on the incident's page in the admin (make serve, "
            f"/admin/incidents/incident/{incident_id}/change/)")


def RegisterHandlers():
    workflow.RegisterKind(KIND, queue="julia_start",
                          description='A Julia-set PNG from tiles computed in parallel: '
                                      'parameters {"width": 256, "height": 256, "tiles": 4}')
    workflow.RegisterHandler(handler=julia_start_handler, queue="julia_start")
    workflow.RegisterHandler(handler=julia_tile_handler, queue="julia_tile")
    workflow.RegisterHandler(handler=julia_stitch_handler, queue="julia_stitch")
