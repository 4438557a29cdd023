/*
 * Correct one slice along depth: tissue surface, focus profile and light
 * attenuation. The surface and attenuation maps are kept for QC; the signal
 * before attenuation compensation (binned laterally) goes to the stack, which
 * measures each slice's attenuation through its overlap with the next.
 */
process AXIAL_CORR {
    tag "slice ${meta.id}"
    label 'process_medium'

    input:
    tuple val(meta), path(zarr)

    output:
    tuple val(meta), path("slice_${meta.tag}_axial_corr.ome.zarr"), emit: zarr
    tuple val(meta), path("slice_${meta.tag}_axial_corr_surface.ome.zarr"), emit: surface
    tuple val(meta), path("slice_${meta.tag}_axial_corr_attenuation.ome.zarr"), emit: attenuation
    tuple val(meta), path("slice_${meta.tag}_axial_corr_uncompensated.ome.zarr"), emit: uncompensated
    path "*_qc*", optional: true, emit: qc

    script:
    def args = task.ext.args ?: ''
    """
    linum_axial_corr.py ${zarr} slice_${meta.tag}_axial_corr.ome.zarr --workers ${task.cpus} ${args}
    """

    stub:
    """
    mkdir slice_${meta.tag}_axial_corr.ome.zarr
    mkdir slice_${meta.tag}_axial_corr_surface.ome.zarr slice_${meta.tag}_axial_corr_attenuation.ome.zarr
    mkdir slice_${meta.tag}_axial_corr_uncompensated.ome.zarr
    """
}
