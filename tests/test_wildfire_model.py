"""The wildfire workflow's pure parts: FIRMS parsing, clustering, the spread model, the map,
the parameters, and the synthetic data set they are tested on."""
from __future__ import annotations

import math
import random
import re
from pathlib import Path

import numpy as np
import pytest

from workflows.wildfire import clusters, figure, firms, maps, spread, synthetic
from workflows.wildfire.params import Params, WildfireInputError, validate

DATA = Path(__file__).parent / "data" / "firms"
REGION = synthetic.REGION


def hotspots_of(name: str, min_confidence: str = "nominal") -> list[firms.Hotspot]:
    return firms.read_hotspots(DATA / name, REGION, min_confidence).hotspots


# The synthetic data set


def test_the_shipped_firms_files_are_exactly_what_the_generator_writes():
    generated = synthetic.generate()
    assert sorted(generated) == sorted(p.name for p in DATA.glob("*.csv"))
    for name, text in generated.items():
        assert (DATA / name).read_text() == text, f"{name}: rerun python -m workflows.wildfire.synthetic"


def test_the_generator_writes_the_same_files_every_time(tmp_path):
    synthetic.write(tmp_path / "a")
    synthetic.write(tmp_path / "b")
    for path in (tmp_path / "a").iterdir():
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes()


# FIRMS CSV


def test_a_viirs_file_gives_the_hotspots_inside_the_bbox_with_their_fields():
    report = firms.read_hotspots(DATA / "viirs_pass1.csv", REGION, "low")
    assert (report.rows, len(report.hotspots), report.outside, report.malformed) == (35, 31, 4, 0)
    first = report.hotspots[0]
    assert (first.latitude, first.longitude) == (38.45, -120.32)
    assert first.acquired == "2024-08-16T09:54Z" and first.daynight == "D"
    assert (first.satellite, first.instrument, first.confidence) == ("N", "VIIRS", "nominal")
    assert first.brightness == 323.35 and first.frp == 49.81 and (first.scan, first.track) == (0.45, 0.7)
    min_lon, min_lat, max_lon, max_lat = REGION
    assert all(min_lon <= h.longitude <= max_lon and min_lat <= h.latitude <= max_lat
               for h in report.hotspots)


def test_rows_below_the_confidence_threshold_are_counted_and_left_out():
    report = firms.read_hotspots(DATA / "viirs_pass1.csv", REGION, "nominal")
    assert (len(report.hotspots), report.low_confidence) == (29, 2)
    assert {h.confidence for h in report.hotspots} == {"nominal", "high"}
    assert len(firms.read_hotspots(DATA / "viirs_pass1.csv", REGION, "high").hotspots) < 29


def test_modis_rows_are_read_and_their_percent_confidence_is_mapped_as_firms_does():
    report = firms.read_hotspots(DATA / "modis.csv", REGION, "low")
    assert len(report.hotspots) == 4 and report.malformed == 0
    assert {h.instrument for h in report.hotspots} == {"MODIS"}
    lines = (DATA / "modis.csv").read_text().splitlines()
    percents = [int(line.split(",")[9]) for line in lines[1:]]
    expected = ["low" if p < 30 else "nominal" if p < 80 else "high" for p in percents]
    assert [h.confidence for h in report.hotspots] == expected
    assert report.hotspots[0].brightness == float(lines[1].split(",")[2])  # MODIS `brightness`


def test_malformed_rows_are_counted_with_their_reasons_and_the_good_rows_are_kept():
    report = firms.read_hotspots(DATA / "malformed.csv", REGION, "low")
    assert (len(report.hotspots), report.malformed, report.rows) == (6, 6, 12)
    assert len(report.reasons) == firms.MAX_REASONS
    assert report.reasons[0] == "line 3: latitude 'abc' is not a number"
    assert report.reasons[1] == "line 5: 10 fields, the header has 14"
    assert "acq_time '2561'" in report.reasons[2] and "confidence 'maybe'" in report.reasons[3]
    assert "latitude 95.0 is outside" in report.reasons[4]
    assert "6 malformed" in report.summary()


def test_an_acq_time_without_leading_zeros_is_read_as_hhmm():
    header = ",".join(synthetic.VIIRS_COLUMNS)
    row = "38.3,-120.2,330.1,0.4,0.4,2024-08-16,912,N,VIIRS,h,2.0NRT,290.0,12.5,D"
    report = firms.parse_hotspots([header, row], REGION)
    assert report.hotspots[0].acquired == "2024-08-16T09:12Z"


def test_a_byte_order_mark_and_blank_lines_are_skipped_and_a_nul_byte_spoils_only_its_row(tmp_path):
    good = (DATA / "viirs_pass1.csv").read_text().splitlines()
    path = tmp_path / "odd.csv"
    path.write_text("\ufeff" + "\n".join([good[0], good[1], "", good[2][:10] + "\0" + good[2][10:],
                                          good[3]]) + "\n")
    report = firms.read_hotspots(path, REGION)
    assert len(report.hotspots) == 2 and report.malformed == 1, report.reasons


def test_a_file_that_is_not_firms_is_refused_naming_the_missing_columns():
    with pytest.raises(firms.FirmsFormatError, match="lacks latitude, longitude, acq_date, acq_time, "
                                                     "bright_ti4 or brightness"):
        firms.read_hotspots(DATA / "not_firms.csv", REGION)


def test_an_empty_or_missing_file_is_refused_with_its_path(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(firms.FirmsFormatError, match="is empty"):
        firms.read_hotspots(tmp_path / "empty.csv", REGION)
    with pytest.raises(firms.FirmsFormatError, match=r"cannot read hotspot file .*nope\.csv"):
        firms.read_hotspots(tmp_path / "nope.csv", REGION)


# Clustering


def brute_force_components(lons, lats, link_km):
    """Connected components by comparing every pair: the reference for link_clusters."""
    x, y = clusters.to_km(np.asarray(lons), np.asarray(lats))
    n, label = len(x), [-1] * len(x)
    for start in range(n):
        if label[start] >= 0:
            continue
        label[start] = start
        stack = [start]
        while stack:
            i = stack.pop()
            for j in range(n):
                if label[j] < 0 and math.hypot(x[i] - x[j], y[i] - y[j]) <= link_km:
                    label[j] = start
                    stack.append(j)
    return label


def same_partition(a, b) -> bool:
    return len(a) == len(b) and all((a[i] == a[j]) == (b[i] == b[j])
                                    for i in range(len(a)) for j in range(len(a)))


def test_a_chain_of_close_points_is_one_cluster_even_when_its_ends_are_far_apart():
    lat = 38.3
    step = 1.5 / (clusters.KM_PER_DEGREE_LON_EQUATOR * math.cos(math.radians(lat)))  # 1.5 km
    lons, lats = [-120 + k * step for k in range(5)], [lat] * 5  # 6 km end to end
    assert list(clusters.link_clusters(lons, lats, link_km=2.0)) == [0] * 5
    assert list(clusters.link_clusters(lons, lats, link_km=1.0)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("seed", range(5))
def test_clusters_are_the_connected_components_of_the_link_distance_graph(seed):
    rng = random.Random(seed)
    lons = [-120 + rng.uniform(0, 0.3) for _ in range(120)]
    lats = [38 + rng.uniform(0, 0.3) for _ in range(120)]
    labels = clusters.link_clusters(lons, lats, link_km=1.5)
    assert 1 < labels.max() + 1 < 120  # a case where the grid matters
    assert same_partition(list(labels), brute_force_components(lons, lats, 1.5))
    firsts = [list(labels).index(k) for k in range(labels.max() + 1)]
    assert firsts == sorted(firsts)  # numbered in order of each cluster's first point


def test_the_synthetic_first_pass_is_three_fires_and_the_second_grows_only_the_first():
    first = hotspots_of("viirs_pass1.csv")
    labels = clusters.link_clusters([h.longitude for h in first], [h.latitude for h in first], 2.0)
    assert [len(g) for g in clusters.groups(labels)] == [14, 9, 6]
    seen = {h.key for h in first}
    second = [h for h in hotspots_of("viirs_pass2.csv") if h.key not in seen]
    every = first + second
    labels = clusters.link_clusters([h.longitude for h in every], [h.latitude for h in every], 2.0)
    assert len(second) == 8 and [len(g) for g in clusters.groups(labels)] == [22, 9, 6]


def test_clusters_keep_their_names_across_passes_and_new_ones_get_new_numbers():
    named, next_number = clusters.name_clusters({}, [[2, 3], [0, 1]], next_number=1)
    assert (named, next_number) == ({"C1": [0, 1], "C2": [2, 3]}, 3)
    # C1 grew, C2 unchanged, a new fire.
    named, next_number = clusters.name_clusters(named, [[0, 1, 4], [2, 3], [5]], next_number)
    assert (named, next_number) == ({"C1": [0, 1, 4], "C2": [2, 3], "C3": [5]}, 4)
    # C1 and C2 joined: the joined fire keeps the name it shares most points with.
    named, _ = clusters.name_clusters(named, [[0, 1, 2, 3, 4, 6], [5]], next_number)
    assert named == {"C1": [0, 1, 2, 3, 4, 6], "C3": [5]}


def test_a_signature_depends_on_the_set_of_hotspots_only():
    assert clusters.signature(["a", "b"]) == clusters.signature(["b", "a"])
    assert clusters.signature(["a", "b"]) != clusters.signature(["a", "b", "c"])


# The spread model


def ridge_fire(**overrides):
    points = [spread.Point(-120.3, 38.4), spread.Point(-120.297, 38.401, 0.5, 0.6)]
    arguments = {"cell_m": 250, "steps": 20, "wind_speed": 6.0, "wind_from": 270.0, "seed": 11}
    return spread.simulate(points, **{**arguments, **overrides})


def test_the_same_seed_gives_the_same_fire_and_another_seed_another():
    a, b, c = ridge_fire(), ridge_fire(), ridge_fire(seed=12)
    assert np.array_equal(a.burnt, b.burnt) and a.steps_run == b.steps_run
    assert not np.array_equal(a.burnt, c.burnt)


def test_the_fire_starts_where_the_hotspots_are_and_grows_from_there():
    result = ridge_fire()
    assert result.ignited.any() and (result.burnt >= result.ignited).all()
    assert result.burnt.sum() > 3 * result.ignited.sum()
    row, col = int((result.north - 38.4) / result.cell_lat), int((-120.3 - result.west) / result.cell_lon)
    assert result.ignited[row, col]


def burnt_centre_offset(result) -> tuple[float, float]:
    """(east, south) offset in cells of the burnt area's centre from the ignition's centre."""
    rows, cols = np.nonzero(result.burnt)
    irows, icols = np.nonzero(result.ignited)
    return cols.mean() - icols.mean(), rows.mean() - irows.mean()


@pytest.mark.parametrize("wind_from, east, south", [(270, 1, 0), (90, -1, 0), (0, 0, 1), (180, 0, -1)])
def test_the_fire_runs_downwind(wind_from, east, south):
    offsets = np.array([burnt_centre_offset(ridge_fire(wind_from=wind_from, seed=s)) for s in range(4)])
    d_east, d_south = offsets.mean(axis=0)
    downwind = d_east * east + d_south * south
    assert downwind > 2, (wind_from, d_east, d_south)  # cells
    across = d_east * abs(south) + d_south * abs(east)
    assert abs(across) < downwind / 2


def test_spread_is_likelier_downwind_than_across_or_against_the_wind():
    fuel = np.zeros((1, 1))

    def chance(dr, dc):
        return float(spread.spread_probability(dr, dc, fuel, wind_speed=8, wind_from=270)[0, 0])

    east, north, south, west = chance(0, 1), chance(-1, 0), chance(1, 0), chance(0, -1)
    assert east > north > west and north == pytest.approx(south)
    still = [float(spread.spread_probability(dr, dc, fuel, 0, 0)[0, 0]) for dr, dc in spread.NEIGHBOURS]
    assert len({round(p, 9) for p in still}) == 2  # sides alike, diagonals alike (farther)


def test_cells_without_fuel_never_burn_and_the_fire_stops_when_nothing_burns():
    result = ridge_fire(steps=200, wind_speed=0.0)
    assert result.steps_run < 200  # it died out before the last step
    no_fuel = np.isnan(spread.fuel_field(result.burnt.shape, np.random.default_rng(11)))
    assert not (result.burnt & no_fuel & ~result.ignited).any()


def test_a_result_survives_its_json_form():
    result = ridge_fire()
    data = result.to_json()
    assert np.array_equal(spread.burnt_mask(data), result.burnt)
    assert data["burnt_cells"] == int(result.burnt.sum())
    assert data["burnt_km2"] == pytest.approx(result.burnt.sum() * 0.0625, abs=1e-3)


def test_a_large_cluster_gets_coarser_cells_instead_of_a_huge_grid():
    points = [spread.Point(-120.5, 38.1), spread.Point(-119.5, 38.9)]  # ~100 km apart
    result = spread.simulate(points, cell_m=100, steps=5, wind_speed=3, wind_from=270, seed=1)
    assert max(result.burnt.shape) <= spread.MAX_CELLS + 1 and result.cell_m > 100


# The map


def test_the_map_is_as_wide_as_asked_and_as_high_as_the_region_is_in_km():
    assert maps.map_size(REGION, 512) == (512, 544)  # 0.5 deg of latitude, 0.6 of longitude at 38.35 N
    assert maps.map_size((0, 0, 1, 1), 100) == (100, 100)


def test_the_map_shows_the_burnt_area_and_the_hotspots_where_they_are():
    result = ridge_fire().to_json()
    image = maps.draw_map(REGION, 300, [(-120.3, 38.4)], [result])
    pixels = np.asarray(image)
    assert image.size == maps.map_size(REGION, 300) and image.mode == "RGB"
    burnt = (pixels == maps.BURNT).all(axis=2)
    burnt_km2 = burnt.sum() * (0.6 / 300 * 111.32 * math.cos(math.radians(38.35))) * (0.5 / 319 * 110.574)
    assert burnt_km2 == pytest.approx(result["burnt_km2"], rel=0.15)
    x, y = round((-120.3 + 120.5) / 0.6 * 300), round((38.6 - 38.4) / 0.5 * image.size[1])
    assert tuple(pixels[y, x]) == maps.HOTSPOT
    assert not (pixels[:, :50] == maps.BURNT).all(axis=2).any()  # nothing west of the fire
    labelled = np.asarray(maps.draw_map(REGION, 300, [], [result], [("C1", -120.3, 38.4)], title="t"))
    assert (labelled == maps.LABEL_BOX).all(axis=2).sum() > 50
    assert (labelled.max(axis=2) < 100).any()  # dark text (anti-aliased) on the pale boxes


def test_the_figure_frames_the_map_with_lat_lon_axes_a_legend_and_the_title():
    result = ridge_fire().to_json()
    bare = np.asarray(maps.draw_map(REGION, 300, [(-120.3, 38.4)], [result]))
    title = "Ridge fire pass 1: 1 cluster"
    image = figure.draw_figure(REGION, 300, [(-120.3, 38.4)], [result], title=title)
    plan = figure.layout(REGION, 300, title)
    assert image.size == figure.figure_size(REGION, 300, title) == plan.size
    (x0, y0), (w, h) = plan.origin, maps.map_size(REGION, 300)
    pixels = np.asarray(image)
    assert (pixels[y0:y0 + h, x0:x0 + w] == bare).all()  # the map itself, untouched
    # Ticks on graticule lines, as dense as their labels allow, labelled with the hemisphere.
    assert plan.lon_ticks == [-120.4, -120.2, -120.0]
    assert [figure.lon_label(v, plan.decimals) for v in plan.lon_ticks[:2]] == ["120.4°W", "120.2°W"]
    assert figure.lat_label(plan.lat_ticks[0], plan.decimals) == "38.1°N"
    assert figure.layout(REGION, 800).lon_ticks == [-120.5, -120.4, -120.3, -120.2, -120.1, -120.0,
                                                    -119.9]
    legend = pixels[plan.legend_top:]
    assert (legend == maps.BURNT).all(axis=2).any() and (legend == maps.HOTSPOT).all(axis=2).any()
    assert (pixels[:y0].max(axis=2) < 100).any()  # the title, in dark text above the map
    assert (pixels[y0 + h + 2:plan.legend_top].max(axis=2) < 100).any()  # longitude labels
    assert (pixels[y0:y0 + h, :x0 - 2].max(axis=2) < 100).any()  # latitude labels


def test_a_narrow_figure_wraps_its_title_and_stacks_its_legend():
    plan = figure.layout(REGION, 64, "a title far too long for a map of sixty-four pixels")
    assert len(plan.title) > 1 and plan.legend_rows == len(figure.LEGEND)
    assert all(figure._extent(plan.font, line)[0] <= plan.size[0] for line in plan.title)


# Parameters


@pytest.fixture(autouse=True)
def _hotspot_files_may_come_from_tmp_path(monkeypatch, tmp_path):
    monkeypatch.setenv("WILDFIRE_DATA_DIRS", f"{tmp_path},{DATA}")


def test_a_hotspot_file_outside_the_data_directories_is_refused(tmp_path):
    (tmp_path / "f.csv").write_text("x")
    for outside in ("/etc/passwd", str(tmp_path / ".." / "f.csv"), "../../etc/passwd"):
        with pytest.raises(WildfireInputError, match="outside the hotspot data directories"):
            validate({"bbox": list(REGION), "hotspots": outside}, base_dir=tmp_path)
    assert validate({"bbox": list(REGION), "hotspots": "f.csv"}, base_dir=tmp_path)


def test_good_parameters_get_the_documented_defaults(tmp_path):
    (tmp_path / "f.csv").write_text("x")
    params = validate({"bbox": list(REGION), "hotspots": "f.csv"}, base_dir=tmp_path)
    assert params == Params(bbox=REGION, hotspots=str(tmp_path / "f.csv"))
    assert Params.from_json(params.to_json()) == params
    params = validate({"bbox": list(REGION), "hotspots": str(tmp_path / "f.csv"), "watch": True,
                       "wind": {"speed": 9, "from": 45}, "steps": 10}, base_dir=Path("/nowhere"))
    assert (params.watch, params.wind_speed, params.wind_from, params.steps) == (True, 9.0, 45.0, 10)


def test_every_problem_with_the_parameters_is_named_with_how_to_fix_it(tmp_path):
    with pytest.raises(WildfireInputError) as caught:
        validate({"bbox": [-119.9, 38.1, -120.5, 38.6], "hotspots": "missing.csv", "watch": "yes",
                  "steps": 2.5, "bboxx": 1, "wind": {"speed": -1}}, base_dir=tmp_path)
    text = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert "unknown parameter 'bboxx'" in text
    assert "[min_lon, min_lat, max_lon, max_lat]" in text and "min < max" in text
    assert f"no such file ({tmp_path / 'missing.csv'})" in text
    assert "'watch' 'yes' must be true or false" in text
    assert "'steps' 2.5 must be an integer" in text and "'wind.speed' -1 is outside 0..40" in text


@pytest.mark.parametrize("parameters, expected", [
    ({}, "'bbox' is missing"),
    (None, "must be a JSON object"),
    ({"bbox": [0, 0, 20, 5], "hotspots": "x"}, "spans more than 10 degrees"),
    ({"bbox": [0, 0, 1, "1"], "hotspots": "x"}, "must be [min_lon"),
    ({"bbox": [0, 0, 1, 1], "hotspots": 3}, "'hotspots' 3 must be the path of a FIRMS CSV"),
    ({"bbox": [0, 0, 1, 1], "hotspots": "x", "min_confidence": "sure"}, "must be one of low"),
])
def test_bad_parameters_are_refused(parameters, expected, tmp_path):
    with pytest.raises(WildfireInputError, match=re.escape(expected)):
        validate(parameters, base_dir=tmp_path)
