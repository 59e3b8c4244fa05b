#!/bin/sh
# GDAL's own checks of the GeoPackage files LayerMirror.sync writes (see docs/sync.md):
# GDAL's validator (validate_gpkg.py -k --extra), a full ogrinfo read (any GDAL warning or
# error fails), and the spatial index against the geometries (HasSpatialIndex, the R-tree's
# rows and boxes, the blobs' srs_id, the extent in gpkg_contents).
#
# Needs Debian's gdal-bin and python3-gdal:  apt-get install -y gdal-bin python3-gdal
# GDAL before 3.7 predates GeoPackage 1.4: its ogrinfo warns "user_version ... may only be
# partially supported" (ignored here) and its validator wants the retired update1/update3
# triggers. Use a current validator instead, e.g. from the gdal-utils wheel:
#   pip download --no-deps gdal-utils -d /tmp/gu && unzip -o /tmp/gu/gdal_utils-*.whl \
#     osgeo_utils/samples/validate_gpkg.py -d /tmp/gu
#   VALIDATOR=/tmp/gu/osgeo_utils/samples/validate_gpkg.py bench/validate_gpkg.sh
# CI cannot run this (no gdal-bin there): tests/test_geopackage.py and tests/test_sync.py
# assert the same things with SQL and pyogrio.
#
# Usage: bench/validate_gpkg.sh [OUT_DIR]   (writes the files with bench/gpkg_scenarios.py)
set -u
out=${1:-/tmp/archibald-gpkg}
here=$(dirname "$0")
python=${PYTHON:-$here/../.venv/bin/python}
validator=${VALIDATOR:-$(dpkg -L python3-gdal | grep '/validate_gpkg.py$' | head -n 1)}
"$python" "$here/gpkg_scenarios.py" "$out" || exit 1
old_gdal='may only be partially supported'
q() { ogrinfo -ro -q "$1" -sql "$2" 2>/dev/null | sed -n 's/^ *[a-z_]* ([A-Za-z]*) = //p'; }
status=0
for file in "$out"/*.gpkg; do
    echo "== $file"
    /usr/bin/python3 "$validator" -k --extra "$file" 2>&1 | grep -v "$old_gdal" | grep . && status=1
    ogrinfo -ro -al "$file" 2>&1 >/dev/null | grep -v "$old_gdal" | grep . && status=1
    for pair in $(q "$file" "SELECT table_name || '|' || column_name AS x FROM gpkg_geometry_columns"); do
        t=${pair%|*}; c=${pair#*|}; r="rtree_${t}_$c"
        fid=$(q "$file" "SELECT name AS n FROM pragma_table_info('$t') WHERE pk = 1")
        bad=$(q "$file" "SELECT
          (SELECT HasSpatialIndex('$t', '$c') = 0)
          + ((SELECT count(*) FROM \"$t\" WHERE \"$c\" IS NOT NULL AND NOT ST_IsEmpty(\"$c\"))
             != (SELECT count(*) FROM \"$r\"))
          + (SELECT count(*) FROM \"$t\" t JOIN \"$r\" r ON r.id = t.\"$fid\"
             WHERE r.minx > ST_MinX(t.\"$c\") OR r.maxx < ST_MaxX(t.\"$c\")
                OR r.miny > ST_MinY(t.\"$c\") OR r.maxy < ST_MaxY(t.\"$c\"))
          + (SELECT count(*) FROM \"$t\" WHERE ST_SRID(\"$c\")
             != (SELECT srs_id FROM gpkg_geometry_columns WHERE table_name = '$t'))
          + (SELECT count(*) FROM gpkg_contents WHERE table_name = '$t' AND NOT (
             min_x <= (SELECT min(ST_MinX(\"$c\")) FROM \"$t\")
             AND max_x >= (SELECT max(ST_MaxX(\"$c\")) FROM \"$t\")
             AND min_y <= (SELECT min(ST_MinY(\"$c\")) FROM \"$t\")
             AND max_y >= (SELECT max(ST_MaxY(\"$c\")) FROM \"$t\"))) AS bad")
        [ "$bad" = 0 ] || { echo "$t.$c: spatial index, srs_id or extent wrong ($bad)"; status=1; }
    done
done
[ $status = 0 ] && echo "all files pass"
exit $status
