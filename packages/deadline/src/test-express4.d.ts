// express4 is an npm alias of express@4 used by the tests; its API is typed like express.
declare module 'express4' {
  import type express from 'express'

  const express4: typeof express
  export = express4
}
