/*
 * The reconstruction: raw acquisition -> one stacked OME-Zarr volume.
 *
 * The field curvature is decided once for the acquisition; then every slice
 * runs its own chain in parallel
 * (mosaic grid -> stitch_3d -> axial_corr -> normalize); a slice whose own
 * focus estimate was refused is corrected again with the acquisition's focus
 * profile (the median of the others', COMBINE_FOCUS) before it is normalized.
 * axial_corr/ holds every slice's final axial correction: the first pass is
 * published once COMBINE_FOCUS has decided (PUBLISH_AXIAL_CORR, or into
 * axial_corr_refused/ for a borrower), a borrower's second by AXIAL_CORR_BORROWED.
 * The stack waits for all slices, ordered by slice id, and the motor
 * positions table. Channels
 * carry a meta map `[id: slice_id, tag: 'zNN']` beside each file.
 */
include { COLLECT_MOTOR_POSITIONS } from '../modules/local/collect_motor_positions'
include { ESTIMATE_FIELD_CURVATURE } from '../modules/local/estimate_field_curvature'
include { CREATE_MOSAIC_GRID      } from '../modules/local/create_mosaic_grid'
include { STITCH_3D               } from '../modules/local/stitch_3d'
include { AXIAL_CORR              } from '../modules/local/axial_corr'
include { AXIAL_CORR as AXIAL_CORR_BORROWED } from '../modules/local/axial_corr'
include { COMBINE_FOCUS           } from '../modules/local/combine_focus'
include { PUBLISH_AXIAL_CORR      } from '../modules/local/publish_axial_corr'
include { PUBLISH_AXIAL_CORR as PUBLISH_AXIAL_CORR_REFUSED } from '../modules/local/publish_axial_corr'
include { NORMALIZE               } from '../modules/local/normalize'
include { STACK_SLICES            } from '../modules/local/stack_slices'
include { SLICE_CONFIG            } from '../modules/local/slice_config'
include { SCREENSHOT as SCREENSHOT_SLICE  } from '../modules/local/screenshot'
include { SCREENSHOT as SCREENSHOT_VOLUME } from '../modules/local/screenshot'
include { REPORT                  } from '../modules/local/report'

// Every file of a channel as one list, or an empty list when there is none.
def allFiles(files) {
    return files.collect().ifEmpty([])
}

// The [meta, file] items of a slice channel whose slice id is (keep) or is not (!keep) among `ids`.
def slicesAmong(items, ids, keep) {
    return items
        .combine(ids.map { list -> [list] })
        .filter { meta, _product, list -> (meta.id in list) == keep }
        .map { meta, product, _list -> [meta, product] }
}

// The acquisition's acquisition.json, or an empty list (no file to stage) when it has none.
def sidecarOf(dir) {
    def sidecar = dir.resolve('acquisition.json')
    return sidecar.exists() ? sidecar : []
}

workflow LINUMPY {
    take:
    acquisition     // value channel: the raw acquisition directory
    slices          // list of slice ids to reconstruct (empty: every slice)
    exclude_slices  // list of slice ids to leave out
    allow_gaps      // boolean: let the stack skip missing slices
    slice_config    // the slice_config.csv this run read, or [] (its use/reason columns are kept)

    main:
    COLLECT_MOTOR_POSITIONS(acquisition, slices)

    def slice_ids = COLLECT_MOTOR_POSITIONS.out.csv
        .splitCsv(header: true)
        .map { row -> row.slice_id as Integer }
        .filter { id -> !(id in exclude_slices) }
    def per_slice = slice_ids
        .map { id -> [id: id, tag: "z${String.format('%02d', id)}"] }
        .combine(acquisition)

    // One decision for every slice (a value channel: each mosaic grid waits for it)
    ESTIMATE_FIELD_CURVATURE(acquisition)
    CREATE_MOSAIC_GRID(per_slice, ESTIMATE_FIELD_CURVATURE.out.json)
    STITCH_3D(CREATE_MOSAIC_GRID.out.grid)
    AXIAL_CORR(STITCH_3D.out.zarr, [])
    // The acquisition's focus profile; the slices whose own estimate was refused are corrected again with it
    COMBINE_FOCUS(AXIAL_CORR.out.qc.flatten().filter { qc -> qc.name.endsWith('_qc.json') }.toSortedList())
    def borrowers = COMBINE_FOCUS.out.borrowers
        .splitCsv(header: true)
        .map { row -> row.slice_id as Integer }
        .toList()
    AXIAL_CORR_BORROWED(slicesAmong(STITCH_3D.out.zarr, borrowers, true), COMBINE_FOCUS.out.json)
    // The first pass, published once decided: axial_corr/ (final), or axial_corr_refused/ for a borrower
    PUBLISH_AXIAL_CORR(slicesAmong(AXIAL_CORR.out.products, borrowers, false))
    PUBLISH_AXIAL_CORR_REFUSED(slicesAmong(AXIAL_CORR.out.products, borrowers, true))
    def final_qc = PUBLISH_AXIAL_CORR.out.qc.mix(AXIAL_CORR_BORROWED.out.qc)
    NORMALIZE(PUBLISH_AXIAL_CORR.out.zarr.mix(AXIAL_CORR_BORROWED.out.zarr))

    def ordered_slices = NORMALIZE.out.zarr
        .toSortedList { a, b -> a[0].id <=> b[0].id }
        .map { pairs -> pairs.collect { pair -> pair[1] } }
    def uncompensated = slicesAmong(AXIAL_CORR.out.uncompensated, borrowers, false)
        .mix(AXIAL_CORR_BORROWED.out.uncompensated)
        .toSortedList { a, b -> a[0].id <=> b[0].id }
        .map { pairs -> pairs.collect { pair -> pair[1] } }
    // The sidecar gives the slice thickness; [] (no file) when the acquisition has none.
    def sidecar = acquisition.map { dir -> sidecarOf(dir) }
    STACK_SLICES(ordered_slices, uncompensated, COLLECT_MOTOR_POSITIONS.out.csv, allow_gaps, sidecar)

    SCREENSHOT_SLICE(NORMALIZE.out.zarr.map { meta, zarr -> ["slice_${meta.tag}_normalize", zarr] })
    SCREENSHOT_VOLUME(STACK_SLICES.out.volume.map { volume -> ['volume', volume] })

    SLICE_CONFIG(
        allFiles(CREATE_MOSAIC_GRID.out.qc),
        allFiles(STITCH_3D.out.qc),
        allFiles(final_qc),
        allFiles(STACK_SLICES.out.qc),
        slice_config,
    )

    REPORT(
        allFiles(COLLECT_MOTOR_POSITIONS.out.qc.mix(SLICE_CONFIG.out.qc)),
        allFiles(CREATE_MOSAIC_GRID.out.qc.mix(ESTIMATE_FIELD_CURVATURE.out.qc)),
        allFiles(STITCH_3D.out.qc),
        allFiles(final_qc),
        allFiles(PUBLISH_AXIAL_CORR_REFUSED.out.qc),
        allFiles(NORMALIZE.out.qc),
        allFiles(STACK_SLICES.out.qc),
        SCREENSHOT_SLICE.out.png.mix(SCREENSHOT_VOLUME.out.png).collect(),
    )

    emit:
    motor_positions = COLLECT_MOTOR_POSITIONS.out.csv
    volume          = STACK_SLICES.out.volume
    slice_config    = SLICE_CONFIG.out.csv
    report          = REPORT.out.html
}
