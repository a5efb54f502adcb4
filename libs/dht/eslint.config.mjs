import root, { sansIo } from '../../eslint.config.mjs';

export default [...root, sansIo(['src/**/*.ts'])];
