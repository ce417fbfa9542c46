/**
 * The `portico` command line: argument parsing only; each command lives in its own module.
 */
import { Command, Option } from 'commander'

const program = new Command()
program
  .name('portico')
  .description('A reverse proxy whose 502s and 504s explain themselves')
  .version('0.1.0')
  .showHelpAfterError()
  // One line a command in the list (summary), and an example of each below it: a new
  // command adds both (test/cli/first-minutes.test.ts checks every listed command).
  .addHelpText('after', `\nExamples:\n  portico serve --listen 127.0.0.1:8080 --to http://127.0.0.1:3000\n  portico check -c portico.yaml\n  portico reload -c portico.yaml\n  portico doctor --upstream http://127.0.0.1:3000/\n  portico convert --nginx /etc/nginx/nginx.conf -o portico.yaml\n  portico lab --list\n  portico top -c portico.yaml\n  portico demo\n\nEach command's own help: portico help <command>`)

program.command('serve')
  .summary('run the proxy from portico.yaml or in quick mode')
  .addHelpText('after', '\nExample:\n  portico serve --listen 127.0.0.1:8080 --to http://127.0.0.1:3000')
  .description('run the proxy from a config file (-c) or in quick mode (--listen/--to)')
  .option('-c, --config <file>', 'portico.yaml to serve')
  .option('--listen <address>', 'quick mode: host:port to listen on', '127.0.0.1:8080')
  .option('--to <url...>', 'quick mode: upstream endpoint URL (repeatable)')
  .addOption(new Option('--log-format <format>', 'access log format').choices(['json', 'text']))
  .option('--expose-error-details', 'quick mode: put internal addresses and raw errors in error responses')
  .option('--workers <n>', 'worker processes: "auto" (one per CPU) or a number; overrides the file\'s workers')
  .action(async (opts) => {
    // A serving process runs with V8 and malloc settings of its own (see there); this may re-exec.
    const { applyServerRuntime } = await import('./server-runtime.ts')
    applyServerRuntime()
    const { serveCommand } = await import('./serve.ts')
    process.exitCode = await serveCommand(opts)
  })

program.command('check')
  .summary('validate a config file without starting (nginx -t)')
  .addHelpText('after', '\nExample:\n  portico check -c portico.yaml')
  .description('validate a config file without starting (like nginx -t)')
  .requiredOption('-c, --config <file>', 'portico.yaml to check')
  .action(async (opts) => {
    const { checkCommand } = await import('./check.ts')
    process.exitCode = await checkCommand(opts.config, process.stdout, process.stderr)
  })

program.command('reload')
  .summary('validate a config, then reload the running proxy')
  .addHelpText('after', '\nExample:\n  portico reload -c portico.yaml')
  .description('validate a config file, then tell the running instance to reload it (admin API POST /reload)')
  .requiredOption('-c, --config <file>', 'portico.yaml to validate; its admin.address says where to ask')
  .option('--admin <address>', 'admin API host:port (default: admin.address of the file)')
  .action(async (opts) => {
    const { reloadCommand } = await import('./reload.ts')
    process.exitCode = await reloadCommand({ config: opts.config, admin: opts.admin }, process.stdout, process.stderr)
  })

program.command('doctor')
  .summary('diagnose 502/504s: DNS, TCP, TLS, HTTP, logs, host')
  .addHelpText('after', '\nExample:\n  portico doctor --upstream http://127.0.0.1:3000/')
  .description('diagnose 502/504s: DNS, TCP, TLS, HTTP, keep-alive, bypass, logs, host')
  .option('-c, --config <file>', 'Portico config: probe every upstream in it')
  .option('--nginx <file>', 'nginx config (nginx.conf): probe every upstream and proxy_pass, fastcgi_pass, uwsgi_pass, scgi_pass, grpc_pass in it (unix sockets too)')
  .option('--upstream <url...>', 'probe this backend URL (repeatable)')
  .option('--via <url>', 'the same request through the proxy, for the bypass comparison')
  .option('--log <file...>', 'access or error log to read (Portico JSON, nginx error.log, nginx access.log)')
  .option('--backend-log <file>', 'backend log to correlate request IDs with')
  .option('--since <when>', 'only log lines newer than this (15m, 2h, or an ISO date)')
  .option('--json', 'JSON output')
  .option('--markdown', 'Markdown output')
  .option('--timeout <duration>', 'per-probe timeout, and how long latency is measured (default 3s), e.g. 5s')
  .option('--samples <n>', 'HTTP probe repetitions for the latency distribution', (v) => Number(v))
  .action(async (opts) => {
    const { doctorCommand } = await import('./doctor.ts')
    process.exitCode = await doctorCommand(opts, process.stdout, process.stderr)
  })

program.command('convert')
  .summary('write portico.yaml from an nginx configuration')
  .addHelpText('after', '\nExample:\n  portico convert --nginx /etc/nginx/nginx.conf -o portico.yaml')
  .description('write a Portico config from an nginx one; list what it left out')
  .requiredOption('--nginx <file>', 'nginx main configuration file, e.g. /etc/nginx/nginx.conf')
  .option('-o, --output <file>', 'where to write portico.yaml (default: standard output)')
  .action(async (opts) => {
    const { convertCommand } = await import('./convert.ts')
    process.exitCode = await convertCommand(opts, process.stdout, process.stderr)
  })

program.command('lab')
  .summary('start a backend that reproduces one failure cause')
  .addHelpText('after', '\nExample:\n  portico lab --list')
  .description('start a loopback backend that reproduces one failure cause')
  .argument('[scenario]', 'scenario name (see --list)')
  .option('--list', 'list the scenarios')
  .option('--port <port>', 'port to listen on (default: a free one)', (v) => Number(v))
  .action(async (scenario, opts) => {
    const { labCommand } = await import('./lab.ts')
    process.exitCode = await labCommand(scenario, opts, process.stdout)
  })

program.command('top')
  .summary('live endpoints and error causes in a terminal')
  .addHelpText('after', '\nExample:\n  portico top -c portico.yaml\n  portico top --admin 127.0.0.1:9901 --once')
  .description('the dashboard in a terminal: upstreams and endpoints with state and error rates by cause, the latest failures; refreshes every second, q quits')
  .option('-c, --config <file>', 'config whose admin.address and admin.token_file say where to ask and with which token')
  .option('--admin <address>', `admin API host:port (default: admin.address of the config, else 127.0.0.1:9901)`)
  .option('--token-file <file>', 'file holding the admin token (default: admin.token_file of the config)')
  .option('--once', 'print one frame and exit (for scripts)')
  .action(async (opts) => {
    const { topCommand } = await import('./top.ts')
    process.exitCode = await topCommand({ config: opts.config, admin: opts.admin, tokenFile: opts.tokenFile, once: opts.once }, process.stdout, process.stderr)
  })

program.command('demo')
  .summary('Portico in front of healthy and faulty backends')
  .addHelpText('after', '\nExample:\n  portico demo   (what npm start runs)')
  .description('the demo lab: Portico on 127.0.0.1:8080 in front of healthy and faulty upstreams')
  .option('--listen <address>', 'where Portico listens', '127.0.0.1:8080')
  .option('--admin <address>', 'where the admin API and the dashboard listen', '127.0.0.1:9901')
  .addOption(new Option('--log-format <format>', 'access log format').choices(['json', 'text']).default('text'))
  .action(async (opts) => {
    const { demoCommand } = await import('./demo.ts')
    process.exitCode = await demoCommand(opts)
  })

await program.parseAsync(process.argv)
