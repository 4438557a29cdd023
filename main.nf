#!/usr/bin/env nextflow
/*
 * linumpy: serial-section OCT acquisition -> one 3D OME-Zarr volume.
 *
 *   nextflow run . --input /path/to/acquisition --outdir results
 *   nextflow run . -profile test            # tiny simulated acquisition
 *   nextflow run . -params-file params.yaml -profile slurm -resume
 *
 * Parameters are documented in nextflow_schema.json and docs/pipeline.md.
 */
include { validateParameters   } from 'plugin/nf-schema'
include { SIMULATE_ACQUISITION } from './modules/local/simulate_acquisition'
include { LINUMPY              } from './workflows/linumpy'

// A list of slice ids given as a YAML list, a number, or "1,2,5" on the command line.
def parseSliceIds(value) {
    if( value == null || value == '' )
        return []
    def items = value instanceof List ? value : value.toString().tokenize(', ')
    return items.collect { item -> item as Integer }
}

workflow {
    main:
    validateParameters()
    if( !params.input && !params.simulate )
        error "Give the raw acquisition with --input DIR (or --simulate PRESET, or -profile test)"

    def acquisition = channel.empty()
    if( params.input ) {
        acquisition = channel.value(file(params.input, checkIfExists: true))
    }
    else {
        SIMULATE_ACQUISITION(params.simulate)
        acquisition = SIMULATE_ACQUISITION.out.acquisition.first()
    }
    // slice_config.csv (docs/pipeline.md): its use=0 rows are left out like exclude_slices
    def slice_config = file(params.slice_config ?: "${params.outdir}/slice_config.csv")
    def unused_rows = slice_config.exists() ? slice_config.splitCsv(header: true).findAll { row -> row.use?.trim() == '0' } : []
    unused_rows.each { row -> log.info "slice ${row.slice_id} left out: use=0 in ${slice_config} (${row.reason ?: 'no reason given'})" }
    def exclude_slices = (parseSliceIds(params.exclude_slices) + unused_rows.collect { row -> row.slice_id as Integer }).unique()
    LINUMPY(
        acquisition,
        parseSliceIds(params.slices),
        exclude_slices,
        params.allow_gaps || !exclude_slices.isEmpty(),
        slice_config.exists() ? slice_config : [],
    )

    onComplete:
    if( workflow.success )
        log.info "Done: the volume is in ${params.outdir}/stack/volume.ome.zarr, the report in ${params.outdir}/report.html"

    onError:
    log.error """\
        linumpy stopped: ${workflow.errorMessage}
        Each task's log is .command.log in its work directory (see the error above).
        A slice that cannot be reconstructed can be left out: add its id to
        exclude_slices (e.g. --exclude_slices 3) and rerun with -resume.
        A full disk or quota ("No space left on device") is not the slice's
        fault: free space and rerun with -resume instead.
        """.stripIndent()
}
