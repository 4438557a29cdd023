/*
 * Register the tiles of one slice and blend them into one volume; the tile
 * positions are saved as a transform JSON. The tiles' projections and least
 * plane means come from the mosaic grid's AIP when it holds them (checked).
 */
process STITCH_3D {
    tag "slice ${meta.id}"
    label 'process_high'

    input:
    tuple val(meta), path(grid), path(aip)

    output:
    tuple val(meta), path("slice_${meta.tag}_stitch_3d.ome.zarr"), emit: zarr
    tuple val(meta), path("slice_${meta.tag}_stitch_3d_transform.json"), emit: transform
    path "*_qc*", optional: true, emit: qc

    script:
    def args = task.ext.args ?: ''
    """
    linum_stitch_3d.py ${grid} slice_${meta.tag}_stitch_3d.ome.zarr --aip ${aip} --workers ${task.cpus} ${args}
    """

    stub:
    """
    mkdir slice_${meta.tag}_stitch_3d.ome.zarr
    echo '{}' > slice_${meta.tag}_stitch_3d_transform.json
    """
}
