export { type InstallHookOutcome, type InstallHookResult, type InstallHookRun, OUTPUT_TAIL_BYTES, type RunningInstallHook, startInstallHook } from './hook-runner';
export { type ChosenInstall, type InstallHook, type InstallPolicy, chooseInstall, parseAllowedNames, parseInstallHooks } from './policy';
