/*
 * Assemble the raw tiles of one slice into a 3D mosaic grid and its 2D
 * average intensity projection (AIP), with the acquisition's field
 * curvature decision applied.
 */
process CREATE_MOSAIC_GRID {
    tag "slice ${meta.id}"
    label 'process_medium'

    input:
    tuple val(meta), path(acquisition)
    path field_curvature  // field_curvature.json of ESTIMATE_FIELD_CURVATURE

    output:
    // the AIP holds each tile's summary (projection, least plane mean): STITCH_3D reads it instead of every tile
    tuple val(meta), path("mosaic_grid_3d_${meta.tag}.ome.zarr"), path("mosaic_grid_2d_${meta.tag}.ome.zarr"), emit: grid
    path "*_qc*", optional: true, emit: qc

    script:
    def args = task.ext.args ?: ''
    """
    linum_create_mosaic_grid_3d.py ${acquisition} mosaic_grid_3d_${meta.tag}.ome.zarr --slice ${meta.id} --field_curvature_json ${field_curvature} --workers ${task.cpus} ${args}
    """

    stub:
    """
    mkdir mosaic_grid_3d_${meta.tag}.ome.zarr mosaic_grid_2d_${meta.tag}.ome.zarr
    """
}
