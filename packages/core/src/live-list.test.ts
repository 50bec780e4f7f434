import { describe, expect, it } from 'vitest'
import { type Linked, LiveList } from './live-list.js'

class Job implements Linked<Job> {
  prev: Job | undefined = undefined
  next: Job | undefined = undefined
  constructor(readonly id: number) {}
}

const ids = (list: LiveList<Job>) => list.snapshot().map((job) => job.id)

describe('LiveList', () => {
  it('keeps items newest first and takes any of them out, head, middle or tail', () => {
    const list = new LiveList<Job>()
    const jobs = [1, 2, 3, 4].map((id) => new Job(id))
    for (const job of jobs) list.add(job)
    expect(ids(list)).toEqual([4, 3, 2, 1])
    list.remove(jobs[2] as Job) // middle
    list.remove(jobs[3] as Job) // head
    list.remove(jobs[0] as Job) // tail
    expect(ids(list)).toEqual([2])
    expect([jobs[2]?.prev, jobs[2]?.next]).toEqual([undefined, undefined])
    list.remove(jobs[1] as Job)
    expect(ids(list)).toEqual([])
  })

  it('ignores removing an item that is not in it, and its snapshot survives removals while walked', () => {
    const list = new LiveList<Job>()
    const outside = new Job(0)
    const a = new Job(1)
    const b = new Job(2)
    list.add(a)
    list.add(b)
    list.remove(outside)
    expect(ids(list)).toEqual([2, 1])
    const seen: number[] = []
    for (const job of list.snapshot()) {
      seen.push(job.id)
      // Cancelling one item may take the others out too.
      list.remove(a)
      list.remove(b)
    }
    expect(seen).toEqual([2, 1])
    expect(ids(list)).toEqual([])
  })
})
