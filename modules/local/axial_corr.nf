/*
 * Correct one slice along depth: tissue surface, focus profile and light
 * attenuation. The surface and attenuation maps are kept for QC; the signal
 * before attenuation compensation (binned laterally) goes to the stack, which
 * measures each slice's attenuation through its overlap with the next.
 * Run again (as AXIAL_CORR_BORROWED) on a slice whose own focus estimate was
 * refused, with the acquisition's focus profile (COMBINE_FOCUS). The first
 * pass is published by PUBLISH_AXIAL_CORR once COMBINE_FOCUS has decided
 * (`products`: every file it wrote).
 */
process AXIAL_CORR {
    tag "slice ${meta.id}"
    label 'process_medium'

    input:
    tuple val(meta), path(zarr)
    path acquisition_focus  // the acquisition's focus profile (COMBINE_FOCUS), or [] for the slice's own

    output:
    tuple val(meta), path("slice_${meta.tag}_axial_corr.ome.zarr"), emit: zarr
    tuple val(meta), path("slice_${meta.tag}_axial_corr_surface.ome.zarr"), emit: surface
    tuple val(meta), path("slice_${meta.tag}_axial_corr_attenuation.ome.zarr"), emit: attenuation
    tuple val(meta), path("slice_${meta.tag}_axial_corr_uncompensated.ome.zarr"), emit: uncompensated
    path "*_qc*", optional: true, emit: qc
    tuple val(meta), path("slice_${meta.tag}_axial_corr*"), emit: products

    script:
    def args = task.ext.args ?: ''
    def focus = acquisition_focus ? "--acquisition_focus ${acquisition_focus}" : ''
    """
    linum_axial_corr.py ${zarr} slice_${meta.tag}_axial_corr.ome.zarr ${focus} --workers ${task.cpus} ${args}
    """

    stub:
    """
    mkdir slice_${meta.tag}_axial_corr.ome.zarr
    mkdir slice_${meta.tag}_axial_corr_surface.ome.zarr slice_${meta.tag}_axial_corr_attenuation.ome.zarr
    mkdir slice_${meta.tag}_axial_corr_uncompensated.ome.zarr
    """
}
