/*
 * Publish one slice's first axial correction (AXIAL_CORR's files, passed
 * through unchanged) once COMBINE_FOCUS has decided where it belongs:
 * PUBLISH_AXIAL_CORR into axial_corr/, the slice's final product;
 * PUBLISH_AXIAL_CORR_REFUSED into axial_corr_refused/ when the slice borrows
 * the acquisition's focus profile (its final product is AXIAL_CORR_BORROWED's).
 * AXIAL_CORR itself publishes nothing, so each published name has one writer.
 */
process PUBLISH_AXIAL_CORR {
    tag "slice ${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(products)  // slice_zNN_axial_corr*: the products, their QC record and figures

    output:
    tuple val(meta), path("slice_${meta.tag}_axial_corr.ome.zarr", includeInputs: true), emit: zarr
    path "*_qc*", includeInputs: true, optional: true, emit: qc

    script:
    """
    true
    """
}
