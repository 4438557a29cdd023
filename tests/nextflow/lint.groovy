/*
 * Offline lint of Nextflow sources with Nextflow's own strict-syntax parser.
 *
 * Usage:
 *   java -cp language-server-all.jar groovy.ui.GroovyMain tests/nextflow/lint.groovy FILE...
 *
 * Each `.nf` file goes through nextflow.script.control.ScriptParser (parse,
 * include resolution, name resolution, type checks); each `.config` file
 * through nextflow.config.control.ConfigParser; nf-test files (`*.nf.test`
 * specs and `nf-test.config`, plain Groovy DSLs) through the Groovy parser.
 *
 * Problems print as `file:line:col: message`. Deprecation warnings (`Channel`,
 * implicit `it`, `shell:` ...) are errors under strict syntax and print as
 * `file:line:col: warning: message`. The exit status is 1 if anything printed.
 *
 * Works offline: ScriptParser leaves `plugin/...` includes (nf-schema) to
 * Nextflow's plugin manager and does not try to download them.
 */
import nextflow.config.control.ConfigParser
import nextflow.script.control.ScriptParser
import org.codehaus.groovy.control.CompilationUnit
import org.codehaus.groovy.control.MultipleCompilationErrorsException
import org.codehaus.groovy.control.Phases
import org.codehaus.groovy.control.SourceUnit
import org.codehaus.groovy.control.messages.ExceptionMessage
import org.codehaus.groovy.control.messages.Message
import org.codehaus.groovy.control.messages.SyntaxErrorMessage
import org.codehaus.groovy.control.messages.WarningMessage

String render(String name, Message message, boolean othersExplainIt) {
    if( message instanceof SyntaxErrorMessage ) {
        def cause = ((SyntaxErrorMessage) message).getCause()
        return "${name}:${cause.getStartLine()}:${cause.getStartColumn()}: ${cause.getOriginalMessage()}"
    }
    if( message instanceof WarningMessage ) {
        def context = ((WarningMessage) message).getContext()
        def line = context?.getStartLine() ?: 0
        def column = context?.getStartColumn() ?: 0
        return "${name}:${line}:${column}: warning: ${((WarningMessage) message).getMessage()}"
    }
    if( message instanceof ExceptionMessage ) {
        // the parser's own exception repeats the syntax error reported beside it
        if( othersExplainIt )
            return null
        def cause = ((ExceptionMessage) message).getCause()
        return "${name}:0:0: ${cause.getClass().getSimpleName()}: ${cause.getMessage()}"
    }
    def text = new StringWriter()
    message.write(new PrintWriter(text))
    return "${name}:0:0: ${text.toString().trim()}"
}

List<String> describe(SourceUnit unit) {
    def name = new File(unit.getName()).path
    def collector = unit.getErrorCollector()
    def errors = collector.hasErrors() ? collector.getErrors() : []
    def warnings = collector.hasWarnings() ? collector.getWarnings() : []
    def hasSyntaxErrors = errors.any { it instanceof SyntaxErrorMessage }
    (errors + warnings).collect { render(name, it, hasSyntaxErrors)?.toString() }.findAll { it != null }
}

List<String> lintScripts(List<File> files) {
    def parser = new ScriptParser()
    files.each { file -> parser.parse(file) }
    parser.analyze()
    // analyze() also parses the included modules: report those too, once each
    parser.compiler().getSources().values().collectMany { unit -> describe(unit) }.unique()
}

List<String> lintConfigs(List<File> files) {
    files.collectMany { file ->
        def parser = new ConfigParser()
        def unit = parser.parse(file)
        parser.analyze()
        describe(unit)
    }
}

List<String> lintGroovy(List<File> files) {
    files.collectMany { file ->
        def compilation = new CompilationUnit()
        def unit = compilation.addSource(file)
        try {
            compilation.compile(Phases.CONVERSION)
        }
        catch( MultipleCompilationErrorsException ignored ) {
            // the messages stay in the error collectors read below
        }
        def messages = describe(unit)
        def collector = compilation.getErrorCollector()
        if( !messages && collector.hasErrors() )
            messages = collector.getErrors().collect { render(file.path, it, false).toString() }
        messages
    }
}

if( !args ) {
    System.err.println('usage: lint.groovy FILE.nf|FILE.config|FILE.nf.test|nf-test.config ...')
    System.exit(2)
}
def files = args.collect { new File(it) }
def missing = files.findAll { !it.isFile() }
if( missing ) {
    missing.each { System.err.println("${it.path}:0:0: no such file") }
    System.exit(2)
}
def nfTest = files.findAll { f -> f.name.endsWith('.nf.test') || f.name == 'nf-test.config' }
def scripts = files.findAll { f -> f.name.endsWith('.nf') }
def configs = files.findAll { f -> f.name.endsWith('.config') && !(f in nfTest) }
def unknown = files - nfTest - scripts - configs
def problems = []
problems += lintScripts(scripts)
problems += lintConfigs(configs)
problems += lintGroovy(nfTest)
problems += unknown.collect { "${it.path}:0:0: not a .nf, .config, .nf.test or nf-test.config file".toString() }
problems.each { println(it) }
System.exit(problems ? 1 : 0)
