/*
 * Save a PNG of one section of an OME-Zarr volume for quality control.
 */
process SCREENSHOT {
    tag "${name}"
    label 'process_single'

    input:
    tuple val(name), path(zarr)

    output:
    path "${name}.png", emit: png

    script:
    def args = task.ext.args ?: ''
    """
    linum_screenshot_omezarr.py ${zarr} ${name}.png ${args}
    """

    stub:
    """
    touch ${name}.png
    """
}
