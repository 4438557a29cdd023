/*
 * Rescale the intensities of one slice between two percentiles (and
 * optionally flatten its lateral illumination).
 */
process NORMALIZE {
    tag "slice ${meta.id}"
    label 'process_medium'

    input:
    tuple val(meta), path(zarr)

    output:
    tuple val(meta), path("slice_${meta.tag}_normalize.ome.zarr"), emit: zarr
    path "*_qc*", optional: true, emit: qc

    script:
    def args = task.ext.args ?: ''
    """
    linum_normalize.py ${zarr} slice_${meta.tag}_normalize.ome.zarr --workers ${task.cpus} ${args}
    """

    stub:
    """
    mkdir slice_${meta.tag}_normalize.ome.zarr
    """
}
