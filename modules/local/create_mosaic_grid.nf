/*
 * Assemble the raw tiles of one slice into a 3D mosaic grid and its 2D
 * average intensity projection (AIP).
 */
process CREATE_MOSAIC_GRID {
    tag "slice ${meta.id}"
    label 'process_medium'

    input:
    tuple val(meta), path(acquisition)

    output:
    tuple val(meta), path("mosaic_grid_3d_${meta.tag}.ome.zarr"), emit: grid
    tuple val(meta), path("mosaic_grid_2d_${meta.tag}.ome.zarr"), emit: aip
    path "*_qc*", optional: true, emit: qc

    script:
    def args = task.ext.args ?: ''
    """
    linum_create_mosaic_grid_3d.py ${acquisition} mosaic_grid_3d_${meta.tag}.ome.zarr --slice ${meta.id} --workers ${task.cpus} ${args}
    """

    stub:
    """
    mkdir mosaic_grid_3d_${meta.tag}.ome.zarr mosaic_grid_2d_${meta.tag}.ome.zarr
    """
}
